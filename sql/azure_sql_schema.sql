-- IMDb non-commercial datasets: Azure SQL Database / SQL Server schema (imdbfs).
--
--   sqlcmd -S SERVER -d imdb -U USER -P PASSWORD -i azure_sql_schema.sql
--
-- The same tables, columns, indexes and views as postgresql_schema.sql and
-- sql_schema.sql (a test keeps the three in step). NVARCHAR for Unicode, BIT
-- for booleans. Arrays are kept as the files write them: elements separated
-- by ',' except title_akas.types and .attributes, which use CHAR(2). Keys are
-- indexed but not unique and there are no foreign keys: the real files have
-- duplicate keys and dangling ids. imdb-db does not load SQL Server; use
-- bcp or BULK INSERT with FIELDTERMINATOR '\t' and no quoting.

-- imdb-db: tables

CREATE TABLE name_basics (
    nconst              NVARCHAR(16) NOT NULL,
    primary_name        NVARCHAR(MAX),
    birth_year          INT,
    death_year          INT,
    primary_profession  NVARCHAR(MAX),
    known_for_titles    NVARCHAR(MAX)
);

CREATE TABLE title_akas (
    title_id            NVARCHAR(16) NOT NULL,
    ordering            INT NOT NULL,
    title               NVARCHAR(MAX),
    region              NVARCHAR(MAX),
    language            NVARCHAR(MAX),
    types               NVARCHAR(MAX),
    attributes          NVARCHAR(MAX),
    is_original_title   BIT
);

CREATE TABLE title_basics (
    tconst              NVARCHAR(16) NOT NULL,
    title_type          NVARCHAR(64),
    primary_title       NVARCHAR(MAX),
    original_title      NVARCHAR(MAX),
    is_adult            BIT,
    start_year          INT,
    end_year            INT,
    runtime_minutes     INT,
    genres              NVARCHAR(MAX)
);

CREATE TABLE title_crew (
    tconst              NVARCHAR(16) NOT NULL,
    directors           NVARCHAR(MAX),
    writers             NVARCHAR(MAX)
);

CREATE TABLE title_episode (
    tconst              NVARCHAR(16) NOT NULL,
    parent_tconst       NVARCHAR(16),
    season_number       INT,
    episode_number      INT
);

CREATE TABLE title_principals (
    tconst              NVARCHAR(16) NOT NULL,
    ordering            INT NOT NULL,
    nconst              NVARCHAR(16),
    category            NVARCHAR(MAX),
    job                 NVARCHAR(MAX),
    characters          NVARCHAR(MAX)
);

CREATE TABLE title_ratings (
    tconst              NVARCHAR(16) NOT NULL,
    average_rating      DECIMAL(3, 1),
    num_votes           INT
);
GO

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
GO

-- imdb-db: views

CREATE OR ALTER VIEW movies_with_ratings AS
SELECT b.tconst, b.primary_title, b.original_title, b.start_year, b.runtime_minutes,
       b.genres, r.average_rating, r.num_votes
FROM title_basics b
JOIN title_ratings r ON r.tconst = b.tconst
WHERE b.title_type = N'movie';
GO

-- IMDb's own threshold for its top-rated chart. T-SQL views cannot be ordered:
-- ORDER BY average_rating DESC, num_votes DESC, tconst when querying.
CREATE OR ALTER VIEW top_rated_movies AS
SELECT tconst, primary_title, start_year, average_rating, num_votes
FROM movies_with_ratings
WHERE num_votes >= 25000;
GO

CREATE OR ALTER VIEW tv_episodes AS
SELECT e.tconst, e.parent_tconst, s.primary_title AS series_title,
       e.season_number, e.episode_number, t.primary_title AS episode_title
FROM title_episode e
LEFT JOIN title_basics t ON t.tconst = e.tconst
LEFT JOIN title_basics s ON s.tconst = e.parent_tconst;
GO

CREATE OR ALTER VIEW title_cast AS
SELECT p.tconst, p.ordering, p.nconst, n.primary_name, p.category, p.job, p.characters
FROM title_principals p
LEFT JOIN name_basics n ON n.nconst = p.nconst;
GO
