-- Runs once, when the PostgreSQL volume is first created (docker-entrypoint-initdb.d).
-- One server, three databases, each with its own role:
--   airflow  Airflow's metadata DB and the Celery result backend
--   dipro    the project's results DB (schema from `alembic upgrade head`)
--   hapi     HAPI FHIR's JPA store
-- Passwords here are for a local stack only; change them (and docker-compose.yml) elsewhere.
CREATE ROLE airflow LOGIN PASSWORD 'airflow';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE dipro LOGIN PASSWORD 'dipro';
CREATE DATABASE dipro OWNER dipro;
CREATE ROLE hapi LOGIN PASSWORD 'hapi';
CREATE DATABASE hapi OWNER hapi;
