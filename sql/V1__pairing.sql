-- Pairing state. Table and column names are a contract: operators query them directly.
--
-- Instants (exp, created_at) are INTEGER Unix epoch milliseconds, UTC. Comparing two of them
-- compares instants, which text timestamps in mixed formats do not (the design this replaces compared
-- ISO-8601 strings with CURRENT_TIMESTAMP text, and so accepted codes that had expired earlier the
-- same day). To read them: SELECT joinid, datetime(exp / 1000, 'unixepoch') FROM pendings;

-- A join code created by client1 and, once accepted, the client2 and room it led to.
CREATE TABLE pendings (
    joinid     TEXT    PRIMARY KEY,
    client1    TEXT    NOT NULL,
    exp        INTEGER NOT NULL,
    client2    TEXT    NULL,
    roomid     TEXT    NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_pendings_client1 ON pendings (client1);
CREATE INDEX idx_pendings_exp ON pendings (exp);
-- Purging a device looks it up on both sides.
CREATE INDEX idx_pendings_client2 ON pendings (client2);

-- A pairing of two devices: the room both open a WebSocket session in.
CREATE TABLE rooms (
    roomid     TEXT    PRIMARY KEY,
    client1    TEXT    NOT NULL,
    client2    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_rooms_client1 ON rooms (client1);
CREATE INDEX idx_rooms_client2 ON rooms (client2);
