"""Screenshots of the MLflow UI as a person sees it: `mmx ui` in a headless Chromium.

    .venv/bin/python benchmarks/mlflow_ui_screenshot.py [--out benchmarks/out] [--port 5055]

Starts ``mmx ui`` on 127.0.0.1 for the project's store, waits for it, and has Chromium
(``apt-get install chromium``) take PNGs of the ``mmx`` experiment's runs table, of its
runs as metric charts and of the newest training run's metric charts; then stops the
server. Look at the PNGs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wait(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"MLflow UI did not answer at {url} within {seconds:.0f} s")


def _shot(browser: str, url: str, png: Path) -> Path:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    f"--user-data-dir={png.parent / '.chromium'}", "--window-size=2560,1000",
                    "--virtual-time-budget=60000", f"--screenshot={png}", url],
                   check=True, capture_output=True, timeout=120)
    return png


def main() -> None:
    """Start the UI, take the screenshots, stop the UI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    import mlflow

    from mmx.tracking.store import EXPERIMENT_NAME, default_tracking_uri, ui_url

    client = mlflow.MlflowClient(tracking_uri=default_tracking_uri(ROOT))
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    if exp is None:
        raise SystemExit("no mmx experiment in the store yet: run `make run`")
    runs = client.search_runs([exp.experiment_id], "attributes.run_name != ''",
                              order_by=["attributes.start_time DESC"], max_results=20)
    trained = next((r for r in runs if "train.architecture" in r.data.params), None)
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([str(Path(sys.executable).parent / "mmx"), "ui", "--port",
                               str(args.port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{args.port}"
        _wait(f"{base}/health")
        shots = [_shot(browser, ui_url(base, exp.experiment_id), args.out / "mlflow_ui_runs.png"),
                 _shot(browser, ui_url(base, exp.experiment_id, charts=True),
                       args.out / "mlflow_ui_run_charts.png")]
        if trained is not None:
            shots.append(_shot(browser, ui_url(base, exp.experiment_id, trained.info.run_id),
                               args.out / "mlflow_ui_run_metrics.png"))
        for png in shots:
            print(png)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
