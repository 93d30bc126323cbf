-- Named rooms with an expiry, and daily referrer counts (issue 14: PrivyDrop's room API).

-- A room a dialect's HTTP API creates by name (PrivyDrop's get_room, create_room). It exists while
-- expires_at is in the future, whether or not anyone is in it: who is in it is the room
-- directory's business. `space` keeps one app's names apart from another's.
CREATE TABLE named_rooms (
    space      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (space, id)
);
CREATE INDEX idx_named_rooms_expires_at ON named_rooms (expires_at);

-- Visits per referrer per UTC day (`YYYY-MM-DD`), from PrivyDrop's set_track.
CREATE TABLE referrer_counts (
    day      TEXT    NOT NULL,
    referrer TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (day, referrer)
);
