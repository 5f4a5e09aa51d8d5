-- m365sync 0.1.0 → 0.2.0 (ALTER EXTENSION m365sync UPDATE).
--
-- Every schema change of 0.2.0 is made twice: in its src/sql piece (what a
-- fresh CREATE EXTENSION builds) and here, so that an upgraded database ends
-- with the same catalog as a fresh one (checked by test/t/080_operations.pl).
\echo Use "ALTER EXTENSION m365sync UPDATE TO '0.2.0'" to load this file. \quit
