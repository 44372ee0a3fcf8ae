"""Identity: who a request is. API tokens (stored as digests, several per user, each with
its client, expiry and last use), the API's token authentication and the client's address.
Below the clinical app: it imports nothing of it; `diagnosis.access` issues, revokes and
audits tokens through `accounts.services`."""
