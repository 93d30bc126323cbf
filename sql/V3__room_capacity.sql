-- Rooms of more than two (issue 12).

-- How many devices a code's room admits: the creator and up to capacity - 1 accepters.
ALTER TABLE pendings ADD COLUMN capacity INTEGER NOT NULL DEFAULT 2;
ALTER TABLE rooms ADD COLUMN capacity INTEGER NOT NULL DEFAULT 2;

-- Every member device of a paired room, in the order it joined the pairing: position 0 is
-- client1 (the creator), 1 is client2 (the first accepter), then later accepters.
-- rooms.client1 and rooms.client2 stay as they were, for the queries operators already have.
CREATE TABLE room_members (
    roomid   TEXT    NOT NULL,
    position INTEGER NOT NULL,
    device   TEXT    NOT NULL,
    PRIMARY KEY (roomid, position),
    UNIQUE (roomid, device)
);
CREATE INDEX idx_room_members_device ON room_members (device);
INSERT INTO room_members (roomid, position, device) SELECT roomid, 0, client1 FROM rooms;
INSERT INTO room_members (roomid, position, device) SELECT roomid, 1, client2 FROM rooms;
