"""Identity: who a request is and what they may do. Roles (`roles`) and the one place that
decides who may do what (`permissions`); sign-in: the login lockout (`lockout`), the idle
timeout of web sessions (`middleware`); API tokens (stored as digests, several per user,
each with its client, expiry and last use: `models`, `services`; issued and revoked for the
site: `tokens`, `api`, `admin`), the API's token authentication and the client's address;
people's accounts (`people`, `people_admin`). Below the clinical app: it imports nothing of
it, and tells the audit trail what happened through a signal (`signals.account_event`),
which the clinical app records."""
