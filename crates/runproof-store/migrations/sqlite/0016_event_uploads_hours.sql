-- Events name the upload they concern (`upload_id`, NULL for others), found through
-- `events_upload`. `event_hours` counts events per hour (`hour`: Unix seconds at the
-- start of the hour), kind, outcome, mode and code ('' where the event had none), for the
-- console's charts: it is written in the transaction that inserts the events, and purged
-- by age only, so that charts keep counting rows the row bound removed until their hour
-- ages out. Existing events are counted once, here.
-- The PostgreSQL twin lives in migrations/postgres.
ALTER TABLE events ADD COLUMN upload_id TEXT;
CREATE INDEX events_upload ON events (upload_id, id);
CREATE TABLE event_hours (
    hour    INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    mode    TEXT    NOT NULL DEFAULT '',
    code    TEXT    NOT NULL DEFAULT '',
    count   INTEGER NOT NULL,
    PRIMARY KEY (hour, kind, outcome, mode, code)
);
-- A chart reads one kind and outcome from an hour on, in order, from the index alone.
CREATE INDEX event_hours_chart ON event_hours (kind, outcome, hour, mode, code, count);
INSERT INTO event_hours (hour, kind, outcome, mode, code, count)
    SELECT at - at % 3600, kind, outcome, COALESCE(mode, ''), COALESCE(code, ''), COUNT(*)
    FROM events WHERE at >= 0
    GROUP BY at - at % 3600, kind, outcome, COALESCE(mode, ''), COALESCE(code, '');
