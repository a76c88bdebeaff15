-- One database per service (each owns its data); run once by the postgres image.
CREATE ROLE procure LOGIN PASSWORD 'procure';
CREATE DATABASE procure_quotes OWNER procure;
CREATE DATABASE procure_inventory OWNER procure;
CREATE DATABASE procure_purchasing OWNER procure;
CREATE DATABASE procure_receiving OWNER procure;
CREATE DATABASE procure_shipping OWNER procure;
CREATE DATABASE procure_notifier OWNER procure;
