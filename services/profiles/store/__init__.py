"""All SQL of the profiles service, by job: `definitions` (profiles, audit, seeding),
`tailing` (cursors and commit-order deltas), `history` (what warm-up replays),
`events` (the event columns and filters the other two share)."""
