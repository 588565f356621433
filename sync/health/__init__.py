"""The customer's billing health on its Kommo company: subscription status, MRR, renewal, balance, overdue, last
payment and a link to the Zuora account."""
