"""Print the JSON schemas of the request models LiteLLM's admin routes validate with.

Run it with the Python of the LiteLLM test bed (it imports ``litellm``, which the operator's
venv does not carry: importing it costs ~10 s and 350 MB). The output is committed as
``litellm_requests.schema.json`` beside this file, so the in-memory admin double validates
every request with LiteLLM's own models at no cost; ``tests/test_contract_gateway.py``
regenerates it from the installed LiteLLM and fails when the two differ (a LiteLLM upgrade).

    ~/.cache/litellm-testbed/venv/bin/python tests/doubles/export_litellm_schemas.py
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

from litellm.models.credentials import UpdateCredentialItem
from litellm.proxy._types import (
    DeleteTeamRequest,
    GenerateKeyRequest,
    KeyRequest,
    ModelInfoDelete,
    NewTeamRequest,
    UpdateKeyRequest,
    UpdateTeamRequest,
)
from litellm.types.router import Deployment, updateDeployment
from litellm.types.utils import CreateCredentialItem

# "METHOD path" (as the double routes them) -> the model LiteLLM's handler declares for the body.
ROUTES = {
    "POST /credentials": CreateCredentialItem,
    "PATCH /credentials/{name}": UpdateCredentialItem,
    "POST /model/new": Deployment,
    "PATCH /model/{id}/update": updateDeployment,
    "POST /model/delete": ModelInfoDelete,
    "POST /team/new": NewTeamRequest,
    "POST /team/update": UpdateTeamRequest,
    "POST /team/delete": DeleteTeamRequest,
    "POST /key/generate": GenerateKeyRequest,
    "POST /key/update": UpdateKeyRequest,
    "POST /key/delete": KeyRequest,
}


def schemas() -> dict[str, object]:
    from importlib.metadata import version

    return {
        "litellm": version("litellm"),
        "routes": {route: model.model_json_schema() for route, model in ROUTES.items()},
    }


if __name__ == "__main__":
    json.dump(schemas(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
