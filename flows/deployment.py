"""The pipeline as a long-running Prefect deployment that re-runs when data changes.

    tatar serve                  # serve from the project root; uses PREFECT_API_URL or a local server
    tatar data import KonIQ ...  # emits `tatar.data.changed` -> the trigger starts a pipeline run

For a fleet, point PREFECT_API_URL at a shared server and use Prefect work pools instead of `serve`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger

from flows.pipeline import pipeline, prefect_api, prepare_environment
from tatar.events import DATA_CHANGED


def build_deployment(name: str = "tatar-pipeline", root: str | Path = "."):
    return pipeline.to_deployment(
        name=name,
        parameters={"root": str(Path(root).resolve())},
        # Module path, not file path: the runner imports the installed `flows` package from any directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
        triggers=[DeploymentEventTrigger(
            name="rerun-on-data-change",
            expect={DATA_CHANGED},
            match={"prefect.resource.id": "tatar.dataset.*"},
        )],
    )


def serve_pipeline(name: str = "tatar-pipeline", root: str | Path = ".") -> None:
    prepare_environment(Path(root).resolve())
    with prefect_api() as url:
        print(f"Serving deployment 'tatar-pipeline/{name}' on {url}; re-runs on '{DATA_CHANGED}' events.")
        serve(build_deployment(name, root))


if __name__ == "__main__":
    serve_pipeline()
