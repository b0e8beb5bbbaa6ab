-- leakscope findings store, version 3: the scan's people across all its stores, de-duplicated
-- (`impact` of the scan document, as JSON). Fingerprints are never stored, so a resumed scan's
-- runs cannot be de-duplicated together: the column holds the last run's figure.
ALTER TABLE scans ADD COLUMN impact TEXT;
