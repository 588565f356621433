"""The won deal's flow (deal_won.py) and what it is made of: the sale (sale.py), the customer
(customer.py), the billing entity (entities.py), and the burst that runs many won deals together
(burst.py). Every flow registers with sync.registry; outcomes are sync.outcomes; Kommo tasks and notes
sync.kommo_tasks."""
