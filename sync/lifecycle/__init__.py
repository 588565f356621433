"""After the sale: a billed deal's plan changes, cancellation and reopening reach its Zuora subscription.

- routing.py     which Kommo lead events become which lifecycle records (the web hook view calls it)
- subscription.py the subscription's current Zuora version (never an Expired one), the local mirror of it,
                  and the one-at-a-time rule for changes to one subscription
- plan_change.py, cancellation.py, reopening.py   the flows, resumable step by step like the won flow
"""
