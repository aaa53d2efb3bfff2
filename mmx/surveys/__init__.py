"""Instrument profiles and the simulator of raw survey exposures."""

from mmx.surveys.instruments import INSTRUMENTS, Band, Instrument, get_instrument, profile_table
from mmx.surveys.simulate import (
    DEFAULT_SURVEY,
    ExposurePlan,
    SimulatedCCD,
    SurveyConfig,
    plan_survey,
    read_survey_params,
    simulate_ccd,
    simulate_exposure,
    simulate_survey,
    survey_config,
)

__all__ = [
    "INSTRUMENTS",
    "Band",
    "Instrument",
    "get_instrument",
    "profile_table",
    "DEFAULT_SURVEY",
    "ExposurePlan",
    "SimulatedCCD",
    "SurveyConfig",
    "plan_survey",
    "read_survey_params",
    "simulate_ccd",
    "simulate_exposure",
    "simulate_survey",
    "survey_config",
]
