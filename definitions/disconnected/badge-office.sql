-- The Facilities badge register of the Badge Access disconnected application.
--
-- provflow never writes here: badges are issued by people (the Manual Provisioning task).
-- The register is only read by reconciliation (`provflow recon --process "Badge Access"
-- --from-target`), the way the seed's scheduled job reads a CSV extract of it
-- (badges.csv has the same columns). Installed by `provflow target install badge-office`;
-- safe to run again.

CREATE TABLE IF NOT EXISTS badges (
    badge_id     TEXT NOT NULL PRIMARY KEY,
    holder_login TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'RETURNED')),
    issued_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS badges_holder ON badges(holder_login);
