"""The workers' side of zkbridge: leases on the records they run, and the dispatcher that hands due
retries and abandoned records to them within a second or two."""
