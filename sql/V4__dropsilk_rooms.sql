-- DropSilk's durable rooms (the dropsilk dialect, issue 15): a six-character code, a host, at
-- most one guest, and an expiry that every read and write slides forward. Expired rows are
-- invisible to every query and deleted by the dialect's sweep.
CREATE TABLE dropsilk_rooms (
    code               TEXT    PRIMARY KEY,
    host_id            TEXT    NOT NULL,
    host_name          TEXT    NOT NULL,
    host_ready         INTEGER NOT NULL DEFAULT 0,
    host_file_count    INTEGER NOT NULL DEFAULT 0,
    host_total_bytes   REAL    NOT NULL DEFAULT 0,
    host_screen_share  INTEGER NOT NULL DEFAULT 0,
    host_chat          INTEGER NOT NULL DEFAULT 0,
    -- NULL while the room waits for its guest.
    guest_id           TEXT,
    guest_name         TEXT,
    guest_ready        INTEGER NOT NULL DEFAULT 0,
    guest_file_count   INTEGER NOT NULL DEFAULT 0,
    guest_total_bytes  REAL    NOT NULL DEFAULT 0,
    guest_screen_share INTEGER NOT NULL DEFAULT 0,
    guest_chat         INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL
);
CREATE INDEX idx_dropsilk_rooms_expires_at ON dropsilk_rooms (expires_at);
