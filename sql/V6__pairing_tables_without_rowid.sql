-- Fewer b-trees written per pairing (a pairing writes a code, a room and its members, and every
-- b-tree a row lands in is one more page in the commit's WAL frames).
--
-- pendings, rooms and room_members are keyed by random text ids, and were rowid tables: each row
-- was stored twice, in the table by rowid and in the index of its key. Rebuilt WITHOUT ROWID, the
-- table is its key's b-tree. Columns, names, types, defaults and indexes are unchanged, and so is
-- every query operators already have.

CREATE TABLE pendings_v6 (
    joinid     TEXT    NOT NULL PRIMARY KEY,
    client1    TEXT    NOT NULL,
    exp        INTEGER NOT NULL,
    client2    TEXT    NULL,
    roomid     TEXT    NULL,
    created_at INTEGER NOT NULL,
    client_key TEXT    NULL,
    capacity   INTEGER NOT NULL DEFAULT 2
) WITHOUT ROWID;
INSERT INTO pendings_v6 (joinid, client1, exp, client2, roomid, created_at, client_key, capacity)
    SELECT joinid, client1, exp, client2, roomid, created_at, client_key, capacity FROM pendings;
DROP TABLE pendings;
ALTER TABLE pendings_v6 RENAME TO pendings;
CREATE INDEX idx_pendings_client1 ON pendings (client1);
CREATE INDEX idx_pendings_exp ON pendings (exp);
CREATE INDEX idx_pendings_client2 ON pendings (client2);
CREATE INDEX idx_pendings_client_key ON pendings (client_key, exp);
CREATE INDEX idx_pendings_roomid ON pendings (roomid);

CREATE TABLE rooms_v6 (
    roomid     TEXT    NOT NULL PRIMARY KEY,
    client1    TEXT    NOT NULL,
    client2    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    capacity   INTEGER NOT NULL DEFAULT 2
) WITHOUT ROWID;
INSERT INTO rooms_v6 (roomid, client1, client2, created_at, capacity)
    SELECT roomid, client1, client2, created_at, capacity FROM rooms;
DROP TABLE rooms;
ALTER TABLE rooms_v6 RENAME TO rooms;
CREATE INDEX idx_rooms_client1 ON rooms (client1);
CREATE INDEX idx_rooms_client2 ON rooms (client2);

CREATE TABLE room_members_v6 (
    roomid   TEXT    NOT NULL,
    position INTEGER NOT NULL,
    device   TEXT    NOT NULL,
    PRIMARY KEY (roomid, position),
    UNIQUE (roomid, device)
) WITHOUT ROWID;
INSERT INTO room_members_v6 (roomid, position, device)
    SELECT roomid, position, device FROM room_members;
DROP TABLE room_members;
ALTER TABLE room_members_v6 RENAME TO room_members;
CREATE INDEX idx_room_members_device ON room_members (device);
