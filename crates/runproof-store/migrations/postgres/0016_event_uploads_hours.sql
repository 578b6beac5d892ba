-- The PostgreSQL twin of migrations/sqlite/0016_event_uploads_hours.sql: events name the
-- upload they concern (`upload_id`); `event_hours` counts events per hour (`hour`: Unix
-- seconds at the start of the hour), kind, outcome, mode and code ('' where the event had
-- none), written with the events and purged by age only. Existing events are counted
-- once, here.
ALTER TABLE events ADD COLUMN upload_id TEXT;
CREATE INDEX events_upload ON events (upload_id, id);
CREATE TABLE event_hours (
    hour    BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    mode    TEXT   NOT NULL DEFAULT '',
    code    TEXT   NOT NULL DEFAULT '',
    count   BIGINT NOT NULL,
    PRIMARY KEY (hour, kind, outcome, mode, code)
);
CREATE INDEX event_hours_chart ON event_hours (kind, outcome, hour, mode, code) INCLUDE (count);
INSERT INTO event_hours (hour, kind, outcome, mode, code, count)
    SELECT at - at % 3600, kind, outcome, COALESCE(mode, ''), COALESCE(code, ''), COUNT(*)
    FROM events WHERE at >= 0
    GROUP BY at - at % 3600, kind, outcome, COALESCE(mode, ''), COALESCE(code, '');
