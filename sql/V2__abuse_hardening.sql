-- Abuse hardening (issue 11).

-- The client that created a code (its IPv4 address or IPv6 /64, the key every per-client limit
-- counts against), so live codes per client can be capped. NULL for rows created before this
-- migration. Kept only as long as the code: the sweeper deletes expired rows.
ALTER TABLE pendings ADD COLUMN client_key TEXT NULL;
CREATE INDEX idx_pendings_client_key ON pendings (client_key, exp);
-- Deleting a room removes the codes that led to it.
CREATE INDEX idx_pendings_roomid ON pendings (roomid);

-- Rooms that were deleted or purged, so that they stay dead: a WebSocket join naming one is
-- answered room_closed instead of opening an ad-hoc room of that id. Only the id and when; the
-- sweeper forgets them after a week.
CREATE TABLE room_tombstones (
    roomid     TEXT    PRIMARY KEY,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX idx_room_tombstones_deleted_at ON room_tombstones (deleted_at);
