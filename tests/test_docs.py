"""The documentation a user clones: every link resolves inside the repository, every variable zkbridge reads
is documented, and the OpenAPI document is the one the code generates (served at /api/schema/)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_link_resolves_inside_the_repository():
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text and "CONTRACT.md" not in text, doc.name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} links to {target}"


def test_every_variable_zkbridge_reads_is_documented():
    settings_code = (ROOT / "zkbridge" / "settings.py").read_text()
    read = set(re.findall(r'config\.\w+\("([A-Z][A-Z0-9_]+)"', settings_code)) - {"DJANGO_SETTINGS_MODULE"}
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert len(read) > 40
    assert sorted(name for name in read if f"`{name}`" not in documented) == []


def test_the_openapi_document_is_generated_from_the_code_and_served(client, tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))
    kept = ROOT / "docs" / "openapi.yaml"
    assert generated.read_text() == kept.read_text(), (
        "regenerate: python manage.py spectacular --file docs/openapi.yaml"
    )
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in ("/webhooks/kommo/{token}/", "/webhooks/zuora/", "/api/usage/", "/healthz", "/metrics"):
        assert path in schema["paths"], path
    usage = schema["paths"]["/api/usage/"]["post"]
    assert set(usage["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert {"202", "400", "401", "413"} <= set(usage["responses"])
    assert schema["paths"]["/webhooks/zuora/"]["post"]["security"] == [{"zuoraCalloutBasic": []}]
    as_json = client.get("/api/schema/", {"format": "json"})
    assert as_json.status_code == 200 and as_json.json()["info"]["title"] == "zkbridge"
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page and "//cdn" not in page
