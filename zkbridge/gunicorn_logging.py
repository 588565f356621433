"""gunicorn's access log without the Kommo web hook token (the URL's path carries it)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from sync.ops.logs import mask_webhook_tokens


class MaskingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "{raw_uri}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_webhook_tokens(atoms[key])
        return atoms
