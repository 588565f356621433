"""What Kommo offers the salespeople: the plan field's options kept in step with the plan map and Zuora's catalog."""
