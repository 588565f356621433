"""Machine endpoints for Kommo's web hooks and Zuora's callouts: DRF views, their authentication and
parsers, the readers of Kommo's form and Zuora's callout bodies, the inbox, and the OpenAPI description."""
