"""gunicorn reads this file when started from the repository root (`gunicorn zkbridge.wsgi`)."""

# The access log masks the Kommo web hook token (the only secret guarding that endpoint).
logger_class = "zkbridge.gunicorn_logging.MaskingLogger"
