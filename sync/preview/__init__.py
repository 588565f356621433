"""Quote previews: a lead in a proposal stage is priced by Zuora's order preview before it is won."""
