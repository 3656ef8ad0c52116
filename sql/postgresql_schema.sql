-- IMDb non-commercial datasets: PostgreSQL schema (imdbfs).
--
--   psql -d imdb -f postgresql_schema.sql      creates the empty tables, indexes and views
--   imdb-db load postgresql://.../imdb         creates them as well, and fills them
--
-- Arrays are native TEXT[]: the files separate their elements with ',' except
-- title_akas.types and .attributes, which use byte 0x02. `\N` in the files is NULL.
-- Keys are indexed but not unique and there are no foreign keys: the real files
-- have duplicate keys and ids that are missing from the other files, and a load
-- keeps every row (imdb-db reports the duplicates). Ids and title types are
-- ASCII: COLLATE "C" sorts them bytewise, which makes their indexes and
-- GROUP BYs several times cheaper than under a database's linguistic locale.
--
-- imdb-db runs the three sections below separately (the marker lines divide
-- them): tables into a staging schema, indexes after the bulk copy, views when
-- the new tables are swapped in. Keep the markers.

-- imdb-db: tables

CREATE TABLE name_basics (
    nconst              VARCHAR(16) COLLATE "C" NOT NULL,
    primary_name        TEXT,
    birth_year          INTEGER,
    death_year          INTEGER,
    primary_profession  TEXT[],
    known_for_titles    TEXT[]
);

CREATE TABLE title_akas (
    title_id            VARCHAR(16) COLLATE "C" NOT NULL,
    ordering            INTEGER NOT NULL,
    title               TEXT,
    region              TEXT,
    language            TEXT,
    types               TEXT[],
    attributes          TEXT[],
    is_original_title   BOOLEAN
);

CREATE TABLE title_basics (
    tconst              VARCHAR(16) COLLATE "C" NOT NULL,
    title_type          TEXT COLLATE "C",
    primary_title       TEXT,
    original_title      TEXT,
    is_adult            BOOLEAN,
    start_year          INTEGER,
    end_year            INTEGER,
    runtime_minutes     INTEGER,
    genres              TEXT[]
);

CREATE TABLE title_crew (
    tconst              VARCHAR(16) COLLATE "C" NOT NULL,
    directors           TEXT[],
    writers             TEXT[]
);

CREATE TABLE title_episode (
    tconst              VARCHAR(16) COLLATE "C" NOT NULL,
    parent_tconst       VARCHAR(16) COLLATE "C",
    season_number       INTEGER,
    episode_number      INTEGER
);

CREATE TABLE title_principals (
    tconst              VARCHAR(16) COLLATE "C" NOT NULL,
    ordering            INTEGER NOT NULL,
    nconst              VARCHAR(16) COLLATE "C",
    category            TEXT,
    job                 TEXT,
    characters          TEXT
);

CREATE TABLE title_ratings (
    tconst              VARCHAR(16) COLLATE "C" NOT NULL,
    average_rating      NUMERIC(3, 1),
    num_votes           INTEGER
);

-- imdb-db: indexes

CREATE INDEX idx_name_basics_nconst ON name_basics (nconst);
CREATE INDEX idx_title_akas_title_id ON title_akas (title_id, ordering);
CREATE INDEX idx_title_basics_tconst ON title_basics (tconst);
CREATE INDEX idx_title_basics_title_type ON title_basics (title_type);
CREATE INDEX idx_title_crew_tconst ON title_crew (tconst);
CREATE INDEX idx_title_episode_tconst ON title_episode (tconst);
CREATE INDEX idx_title_episode_parent ON title_episode (parent_tconst, season_number, episode_number);
CREATE INDEX idx_title_principals_tconst ON title_principals (tconst, ordering);
CREATE INDEX idx_title_principals_nconst ON title_principals (nconst);
CREATE INDEX idx_title_ratings_tconst ON title_ratings (tconst);

-- imdb-db: views

CREATE OR REPLACE VIEW movies_with_ratings AS
SELECT b.tconst, b.primary_title, b.original_title, b.start_year, b.runtime_minutes,
       b.genres, r.average_rating, r.num_votes
FROM title_basics b
JOIN title_ratings r ON r.tconst = b.tconst
WHERE b.title_type = 'movie';

-- IMDb's own threshold for its top-rated chart.
CREATE OR REPLACE VIEW top_rated_movies AS
SELECT tconst, primary_title, start_year, average_rating, num_votes
FROM movies_with_ratings
WHERE num_votes >= 25000
ORDER BY average_rating DESC, num_votes DESC, tconst;

CREATE OR REPLACE VIEW tv_episodes AS
SELECT e.tconst, e.parent_tconst, s.primary_title AS series_title,
       e.season_number, e.episode_number, t.primary_title AS episode_title
FROM title_episode e
LEFT JOIN title_basics t ON t.tconst = e.tconst
LEFT JOIN title_basics s ON s.tconst = e.parent_tconst;

CREATE OR REPLACE VIEW title_cast AS
SELECT p.tconst, p.ordering, p.nconst, n.primary_name, p.category, p.job, p.characters
FROM title_principals p
LEFT JOIN name_basics n ON n.nconst = p.nconst;
