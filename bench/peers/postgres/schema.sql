-- bench_peers: the PostgreSQL side of the workloads.  An insert into contacts
-- does what crmd's create and its hook do, in one transaction: the row, its
-- city index entry, the loyalty upsert and the notification (delivered to the
-- LISTEN clients at commit), through a PL/pgSQL AFTER INSERT trigger.
CREATE TABLE contacts (
    id        bigserial PRIMARY KEY,
    name      text NOT NULL,
    email     text,
    phone     text,
    job_title text,
    street    text,
    city      text,
    postcode  text,
    country   text,
    owner     text,
    source    text,
    language  text
);
CREATE INDEX contacts_city ON contacts (city);

CREATE TABLE loyalty (
    contact_id bigint PRIMARY KEY,
    points     bigint NOT NULL
);

CREATE FUNCTION contacts_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loyalty (contact_id, points) VALUES (NEW.id, 10)
        ON CONFLICT (contact_id) DO UPDATE SET points = loyalty.points + 10;
    PERFORM pg_notify('contacts', row_to_json(NEW)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_loyalty AFTER INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION contacts_after_insert();
