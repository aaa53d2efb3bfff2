"""mmx.io.atomic: a file appears complete or not at all."""

from __future__ import annotations

import stat

import pytest

from mmx.io.atomic import atomic_write, atomic_write_text


def test_a_written_file_is_complete_with_the_mode_open_would_give(tmp_path):
    path = atomic_write_text(tmp_path / "new" / "summary.json", '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n'
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    plain.unlink()
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("old\n")
    seen = []

    def half(tmp):
        seen.append(tmp)
        assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp.name.startswith(".")
        tmp.write_text("new, but not fin")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"] and not seen[0].exists()
