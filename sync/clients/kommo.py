"""KommoClient: HTTP to Python values and typed errors. No business rules live here.

Follows ../shared/reference/kommo-api.md: a long-lived token, or OAuth whose refresh tokens are
single-use (refreshed under a lock and persisted before use, so two workers can never race), at most
7 requests a second across all workers, HTTP 204 for empty answers, non-JSON 429 and HTML 403 pages.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

from django.conf import settings

from sync.clients.errors import ApiError, AuthError, BusinessError, NotFoundError, TransientError
from sync.clients.http import Answer, HttpClient, excerpt
from sync.clients.tokens import shared_token
from sync.locks import locked_row
from sync.models import KommoConnection, ProviderToken, Throttle

REFRESH_MARGIN = dt.timedelta(minutes=5)
BATCH = 50  # Kommo asks for at most 50 entities per write
# Ids per list call (filter[id][]=…): 100 keep the request line near 3 KB, under the 4 KB some front servers
# allow (Kommo lists up to 250 per page; a longer line is refused with an HTML 414).
IDS_PER_CALL = 100
# Kommo's 1-second window, with a margin. Each call's place in the window is dated from its end once it is
# over: the latest moment it can have reached Kommo, however long it was held up on its way (a busy machine,
# the network). Dated from the moment it was let through, calls delayed on two saturated cores arrived
# bunched: 8 in one second with a 1.05 s window, once with 1.1 s.
WINDOW = 1.05


class KommoClient(HttpClient):
    provider = "kommo"

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 20,
        requests_per_second: int = 7,
        session=None,
    ):
        super().__init__(base_url, timeout, session)
        self.long_lived = access_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.initial_refresh_token = refresh_token
        self.rps = requests_per_second
        self._access: str | None = None
        self._spent_codes: list[str] = []  # authorization codes this client exchanged: kept out of the call log

    @classmethod
    def from_settings(cls, *, connected: bool | None = None) -> KommoClient:
        """The client as configured. Kommo connected from the admin (an OAuth connection, sync.kommo_connect)
        takes precedence over a long-lived KOMMO_ACCESS_TOKEN: the connection is the operator's latest word.
        `connected`: whether it is (read from the database when not given)."""
        if connected is None:
            connected = KommoConnection.objects.filter(status=KommoConnection.Status.CONNECTED).exists()
        return cls(
            settings.KOMMO_BASE_URL,
            access_token=None if connected else settings.KOMMO_ACCESS_TOKEN,
            client_id=settings.KOMMO_CLIENT_ID,
            client_secret=settings.KOMMO_CLIENT_SECRET,
            redirect_uri=settings.KOMMO_REDIRECT_URI,
            refresh_token=settings.KOMMO_REFRESH_TOKEN,
            timeout=settings.KOMMO_TIMEOUT_SECONDS,
            requests_per_second=settings.KOMMO_REQUESTS_PER_SECOND,
        )

    def secrets(self) -> list[str]:
        known = [
            self.long_lived,
            self.client_secret,
            self.initial_refresh_token,
            self._access,
            *self._spent_codes,
            *self._webhook_tokens,
        ]
        return [s for s in known if s]

    @cached_property
    def _webhook_tokens(self) -> list[str]:
        """The web hook URL travels in subscription calls: its tokens are scrubbed too (read once per client,
        not on every call's log row)."""
        from sync.installation import webhook_secrets

        return webhook_secrets()

    # --- throttle ---------------------------------------------------------------------------------
    def before_request(self) -> float:
        """Wait for a free place in the shared window (≤ rps calls, all workers together); returns the
        place's time, for after_request."""
        with locked_row(Throttle, name=self.provider) as row:
            now = time.time()
            recent = sorted(t for t in row.recent if t > now - WINDOW)
            if len(recent) >= self.rps:
                time.sleep(max(recent[-self.rps] + WINDOW - now, 0))
                now = time.time()
                recent = [t for t in recent if t > now - WINDOW]
            recent.append(now)
            row.recent = recent[-self.rps :]
            row.save(update_fields=["recent"])
        return now

    def after_request(self, turn: float) -> None:
        """The call is over: its place now dates from its end (if a newer call has not pushed it out)."""
        with locked_row(Throttle, name=self.provider) as row:
            if turn in row.recent:
                row.recent = sorted(time.time() if t == turn else t for t in row.recent)
                row.save(update_fields=["recent"])

    # --- tokens -----------------------------------------------------------------------------------
    def auth_headers(self, force_refresh: bool = False) -> dict[str, str]:
        if self.long_lived:
            return {"Authorization": f"Bearer {self.long_lived}"}
        return {"Authorization": f"Bearer {self.access_token(force_refresh)}"}

    def access_token(self, force_refresh: bool = False) -> str:
        if not (self.client_id and self.client_secret and self.redirect_uri):
            raise AuthError(
                "Kommo: set KOMMO_ACCESS_TOKEN, or the KOMMO_CLIENT_ID/SECRET/REDIRECT_URI/REFRESH_TOKEN variables",
                provider=self.provider,
            )
        token, _ = shared_token(
            self.provider,
            exchange=self._exchange,
            margin=REFRESH_MARGIN,
            force_refresh=force_refresh,
            used=self._access,
        )
        self._access = token
        return token

    def exchange_code(self, code: str) -> tuple[str, str, int]:
        """An authorization code (Kommo's integration settings, or its consent page's redirect) for a token pair:
        valid 20 minutes and once; Kommo answers 400 for a code expired, used or issued to another redirect URI."""
        self._spent_codes.append(code)
        return self._token_call({"grant_type": "authorization_code", "code": code})

    def account(self) -> dict[str, Any]:
        """Who the token is for: the Kommo account's id, name and subdomain."""
        return self.request("GET", "/api/v4/account").body or {}

    def _exchange(self, row: ProviderToken) -> tuple[str, str | None, int]:
        """Kommo's refresh tokens are single-use: the stored one (or KOMMO_REFRESH_TOKEN, the first time) buys
        a new pair."""
        refresh_token = row.refresh_token or self.initial_refresh_token
        if not refresh_token:
            raise AuthError("Kommo: no refresh token stored; set KOMMO_REFRESH_TOKEN", provider=self.provider)
        return self._token_call({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _token_call(self, grant: dict[str, str]) -> tuple[str, str, int]:
        answer = self.request(
            "POST",
            "/oauth2/access_token",
            json_body={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                **grant,
                "redirect_uri": self.redirect_uri,
            },
            authenticated=False,
        )
        body = answer.body or {}
        if not body.get("access_token") or not body.get("refresh_token"):
            raise AuthError(f"Kommo: the token answer lacks tokens: {excerpt(answer.text)}", provider=self.provider)
        return body["access_token"], body["refresh_token"], int(body.get("expires_in") or 86400)

    # --- errors -----------------------------------------------------------------------------------
    def classify(self, answer: Answer) -> ApiError | None:
        status, body = answer.status, answer.body
        kw: dict[str, Any] = {"status": status, "excerpt": excerpt(answer.text), "provider": "kommo"}
        if 200 <= status < 300:
            if body is None and answer.text.strip():
                return TransientError(
                    f"Kommo answered {status} with a body that is not JSON: {excerpt(answer.text)}", **kw
                )
            return None
        detail = self._problem(body) or excerpt(answer.text) or "(empty body)"
        if status == 429:
            return TransientError(
                f"Kommo rate limit (429): {detail}", retry_after=self.retry_after(answer) or 1.0, **kw
            )
        if status == 401:
            return AuthError(f"Kommo authentication failed (401): {detail}", **kw)
        if status == 403 and isinstance(body, dict):
            # A problem+json 403 is a refusal of this request (an administrator's right, say), not the block.
            return BusinessError(f"Kommo refused the request (403): {detail}", **kw)
        if status == 403:
            # Kommo blocks accounts that keep exceeding the rate limit with an HTML 403 on every call.
            return TransientError(
                f"Kommo refused access (403; blocked for exceeding limits?): {detail}",
                retry_after=self.retry_after(answer) or 600.0,
                **kw,
            )
        if status == 404:
            return NotFoundError(f"Kommo: not found (404): {detail}", **kw)
        if status >= 500 or status == 408:
            return TransientError(
                f"Kommo server error ({status}): {detail}", retry_after=self.retry_after(answer), **kw
            )
        return BusinessError(f"Kommo refused the request ({status}): {detail}", entries=self._entries(body), **kw)

    @staticmethod
    def _entries(body: Any) -> dict[int, str]:
        """What a batch refusal says about each entry it names (validation-errors[].request_id: the entry's
        index in the request)."""
        entries: dict[int, str] = {}
        if not isinstance(body, dict):
            return entries
        for group in body.get("validation-errors") or []:
            request_id = str((group or {}).get("request_id", "")) if isinstance(group, dict) else ""
            if not request_id.isdigit():
                continue
            said = [
                f"{e.get('path')}: {e.get('detail')} ({e.get('code')})"
                for e in group.get("errors") or []
                if isinstance(e, dict)
            ]
            entries[int(request_id)] = "; ".join(said) or "refused"
        return entries

    @staticmethod
    def _problem(body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        parts = [str(body.get("detail") or body.get("title") or "")]
        for group in body.get("validation-errors") or []:
            for error in (group or {}).get("errors") or []:
                parts.append(f"{error.get('path')}: {error.get('detail')} ({error.get('code')})")
        return "; ".join(p for p in parts if p)

    # --- API ---------------------------------------------------------------------------------------
    def get_lead(self, lead_id: int, with_: str = "contacts,catalog_elements") -> dict:
        answer = self.request("GET", f"/api/v4/leads/{int(lead_id)}", params={"with": with_})
        if answer.status == 204 or not isinstance(answer.body, dict):
            raise NotFoundError(
                f"Kommo: lead {lead_id} does not exist or is not visible to zkbridge",
                status=answer.status,
                provider=self.provider,
            )
        return answer.body

    def _list(self, path: str, key: str, params: list[tuple[str, Any]]) -> Iterator[dict]:
        answer = self.request("GET", path, params=params)
        while True:
            if answer.status == 204 or not isinstance(answer.body, dict):
                return  # Kommo: an empty list is HTTP 204 with no body
            yield from (answer.body.get("_embedded") or {}).get(key) or []
            next_link = ((answer.body.get("_links") or {}).get("next") or {}).get("href")
            if not next_link:
                return
            answer = self.request("GET", self.relative(next_link))

    def get_contacts(self, ids: list[int]) -> list[dict]:
        """Contacts by id, IDS_PER_CALL a call."""
        return self._by_ids("/api/v4/contacts", "contacts", ids)

    def get_company(self, company_id: int) -> dict | None:
        answer = self.request("GET", f"/api/v4/companies/{int(company_id)}")
        return answer.body if isinstance(answer.body, dict) else None

    def won_leads(
        self, pipeline_status: list[tuple[int, int]] | None, *, updated_from: int | None = None, status_id: int = 142
    ) -> Iterator[dict]:
        """Leads in the Won status, optionally only those updated since a unix time (all pages)."""
        params: list[tuple[str, Any]] = [("limit", 250), ("with", "contacts")]
        for index, (pipeline_id, status) in enumerate(pipeline_status or []):
            params += [
                (f"filter[statuses][{index}][pipeline_id]", pipeline_id),
                (f"filter[statuses][{index}][status_id]", status),
            ]
        if updated_from is not None:
            params.append(("filter[updated_at][from]", int(updated_from)))
        for lead in self._list("/api/v4/leads", "leads", params):
            if lead.get("status_id") == status_id:
                yield lead

    def leads_by_ids(self, ids: list[int], with_: str | None = None) -> list[dict]:
        """Leads by id, IDS_PER_CALL a call; `with_` as for get_lead."""
        return self._by_ids("/api/v4/leads", "leads", ids, [("with", with_)] if with_ else [])

    def companies_by_ids(self, ids: list[int]) -> list[dict]:
        """Companies by id, IDS_PER_CALL a call; one Kommo no longer has is simply not in the answer."""
        return self._by_ids("/api/v4/companies", "companies", ids)

    def _by_ids(self, path: str, key: str, ids: list[int], extra: list[tuple[str, Any]] | None = None) -> list[dict]:
        """Entities by id lists, IDS_PER_CALL a call, in the order asked. One call after another: together
        they would only queue at the 7-a-second throttle, and calls let through at the same moment arrive
        bunched (a burst on two busy cores showed 8 in one second)."""
        found: list[dict] = []
        for start in range(0, len(ids), IDS_PER_CALL):
            params = [("filter[id][]", int(i)) for i in ids[start : start + IDS_PER_CALL]] + [("limit", 250)]
            found += self._list(path, key, params + (extra or []))
        return found

    def pipelines(self) -> list[dict]:
        answer = self.request("GET", "/api/v4/leads/pipelines")
        return ((answer.body or {}).get("_embedded") or {}).get("pipelines") or [] if answer.status != 204 else []

    @staticmethod
    def field_values(values: Mapping[int, str | None]) -> list[dict[str, Any]]:
        """Kommo's custom_fields_values for these fields; an empty value clears its field with `"values": null`,
        as Kommo documents (the PHP SDK's NullCustomFieldValueCollection) — an empty string is refused on select
        and numeric fields."""
        return [
            {"field_id": int(fid), "values": [{"value": value}] if value not in (None, "") else None}
            for fid, value in values.items()
        ]

    def update_lead_fields(self, lead_id: int, values: Mapping[int, str | None]) -> int | None:
        """Write lead fields; returns the lead's new updated_at (Kommo's web hook for this edit carries it)."""
        fields = self.field_values(values)
        answer = self.request("PATCH", f"/api/v4/leads/{int(lead_id)}", json_body={"custom_fields_values": fields})
        stamp = answer.body.get("updated_at") if isinstance(answer.body, dict) else None
        return int(stamp) if isinstance(stamp, int | str) and str(stamp).isdigit() else None

    def update_leads_fields(self, changes: Sequence[tuple[int, Mapping[int, str | None]]]) -> list[int | None]:
        """Write the fields of up to 50 leads in one PATCH /api/v4/leads; each lead's new updated_at, in order.
        All or nothing: a refusal naming some entries (BusinessError.entries) wrote none of them."""
        if not 1 <= len(changes) <= BATCH:
            raise ValueError(f"1 to {BATCH} leads per PATCH, not {len(changes)}")
        body = [
            {
                "id": int(lead_id),
                "custom_fields_values": self.field_values(values),
            }
            for lead_id, values in changes
        ]
        answer = self.request("PATCH", "/api/v4/leads", json_body=body)
        stamps = {}
        for lead in ((answer.body or {}).get("_embedded") or {}).get("leads") or []:
            stamp = lead.get("updated_at") if isinstance(lead, dict) else None
            if isinstance(stamp, int | str) and str(stamp).isdigit():
                stamps[lead.get("id")] = int(stamp)
        return [stamps.get(int(lead_id)) for lead_id, _ in changes]

    def update_parties_fields(self, entity: str, changes: Sequence[tuple[int, Mapping[int, str | None]]]) -> None:
        """Write the fields of up to 50 companies or contacts in one PATCH /api/v4/{entity} (all or nothing)."""
        if entity not in ("companies", "contacts"):
            raise ValueError(f"not a party: {entity!r}")
        if not 1 <= len(changes) <= BATCH:
            raise ValueError(f"1 to {BATCH} {entity} per PATCH, not {len(changes)}")
        body = [
            {"id": int(party_id), "custom_fields_values": self.field_values(values)} for party_id, values in changes
        ]
        self.request("PATCH", f"/api/v4/{entity}", json_body=body)

    def add_notes(self, entity: str, notes: list[tuple[int, str]]) -> list[int | None]:
        """Up to 50 common notes in one POST (entity id, text); the new notes' ids, in order."""
        if not 1 <= len(notes) <= BATCH:
            raise ValueError(f"1 to {BATCH} notes per POST, not {len(notes)}")
        body = [{"entity_id": int(i), "note_type": "common", "params": {"text": text}} for i, text in notes]
        answer = self.request("POST", f"/api/v4/{entity}/notes", json_body=body)
        created = ((answer.body or {}).get("_embedded") or {}).get("notes") or []
        ids = [n.get("id") if isinstance(n, dict) else None for n in created]
        return ids + [None] * (len(notes) - len(ids))

    def notes(self, entity: str, entity_id: int) -> list[dict]:
        """Notes on a lead, contact or company (`entity`: leads, contacts, companies)."""
        params = [("filter[entity_id][]", int(entity_id)), ("limit", 250)]
        return list(self._list(f"/api/v4/{entity}/notes", "notes", params))

    def add_note(self, entity: str, entity_id: int, text: str) -> int | None:
        answer = self.request(
            "POST",
            f"/api/v4/{entity}/notes",
            json_body=[{"entity_id": int(entity_id), "note_type": "common", "params": {"text": text}}],
        )
        notes = ((answer.body or {}).get("_embedded") or {}).get("notes") or []
        return notes[0].get("id") if notes else None

    def tasks(self, entity_id: int, entity_type: str = "leads") -> list[dict]:
        return list(
            self._list(
                "/api/v4/tasks",
                "tasks",
                [("filter[entity_id][]", int(entity_id)), ("filter[entity_type]", entity_type), ("limit", 250)],
            )
        )

    def add_task(
        self,
        entity_id: int,
        text: str,
        *,
        due: dt.datetime,
        task_type_id: int = 1,
        responsible_user_id: int | None = None,
        entity_type: str = "leads",
    ) -> int | None:
        task: dict[str, Any] = {
            "text": text,
            "complete_till": int(due.timestamp()),
            "entity_id": int(entity_id),
            "entity_type": entity_type,
            "task_type_id": task_type_id,
        }
        if responsible_user_id:
            task["responsible_user_id"] = int(responsible_user_id)
        answer = self.request("POST", "/api/v4/tasks", json_body=[task])
        tasks = ((answer.body or {}).get("_embedded") or {}).get("tasks") or []
        return tasks[0].get("id") if tasks else None

    def complete_task(self, task_id: int, result: str) -> None:
        """Complete a task with a result text (Kommo asks for one when a task is completed)."""
        self.request(
            "PATCH",
            f"/api/v4/tasks/{int(task_id)}",
            json_body={"is_completed": True, "result": {"text": result[:1000]}},
        )

    FIELD_ENTITIES = ("leads", "contacts", "companies")

    def catalog_fields(self, catalog_id: int) -> list[dict]:
        """A list's (the products catalog's) field definitions: SKU, PRICE… by their codes."""
        return list(self._list(f"/api/v4/catalogs/{int(catalog_id)}/custom_fields", "custom_fields", [("limit", 250)]))

    def catalog_elements(self, catalog_id: int) -> list[dict]:
        """Every element of a list (the products catalog), paged."""
        return list(self._list(f"/api/v4/catalogs/{int(catalog_id)}/elements", "elements", [("limit", 250)]))

    def update_catalog_elements(self, catalog_id: int, elements: list[dict]) -> None:
        """Write up to 50 elements ({id, name?, custom_fields_values?}) in one PATCH, all or nothing."""
        if not 1 <= len(elements) <= BATCH:
            raise ValueError(f"1 to {BATCH} elements per PATCH, not {len(elements)}")
        self.request("PATCH", f"/api/v4/catalogs/{int(catalog_id)}/elements", json_body=elements)

    def fields_path(self, entity: str) -> str:
        """Where an entity's field definitions are (leads, contacts or companies only)."""
        if entity not in self.FIELD_ENTITIES:
            raise ValueError(f"no custom fields for {entity!r}")
        return f"/api/v4/{entity}/custom_fields"

    def custom_fields(self, entity: str = "leads") -> list[dict]:
        """The account's field definitions for leads, contacts or companies (select fields with their `enums`)."""
        return list(self._list(self.fields_path(entity), "custom_fields", [("limit", 250)]))

    def custom_field(self, entity: str, field_id: int) -> dict | None:
        """One field's definition; None when the account has no such field."""
        answer = self.request("GET", f"{self.fields_path(entity)}/{int(field_id)}")
        return answer.body if answer.status != 204 and isinstance(answer.body, dict) else None

    def set_field_options(self, entity: str, field_id: int, enums: list[dict]) -> dict:
        """Give a select field its options, whole (Kommo removes an option left out, and clears it on every entity
        carrying it: callers pass every existing option with its id)."""
        answer = self.request("PATCH", f"{self.fields_path(entity)}/{int(field_id)}", json_body={"enums": enums})
        return answer.body if isinstance(answer.body, dict) else {}

    def add_fields(self, entity: str, fields: list[dict]) -> list[dict]:
        """Create fields ({name, type[, enums]}); the created definitions, in order."""
        answer = self.request("POST", self.fields_path(entity), json_body=fields)
        if not isinstance(answer.body, dict):
            return []
        return (answer.body.get("_embedded") or {}).get("custom_fields") or []

    def webhooks(self) -> list[dict]:
        answer = self.request("GET", "/api/v4/webhooks")
        return ((answer.body or {}).get("_embedded") or {}).get("webhooks") or [] if answer.status != 204 else []

    def unsubscribe_webhook(self, destination: str) -> None:
        self.request("DELETE", "/api/v4/webhooks", json_body={"destination": destination})

    def subscribe_webhook(self, destination: str, events: list[str]) -> dict:
        return (
            self.request("POST", "/api/v4/webhooks", json_body={"destination": destination, "settings": events}).body
            or {}
        )


def keep_refresh_token_alive() -> str:
    """Scheduled weekly: a Kommo refresh token unused for three months expires, so use it."""
    client = KommoClient.from_settings()
    if client.long_lived:
        return "long-lived token: nothing to refresh"
    client.access_token(force_refresh=True)
    return "refreshed"
