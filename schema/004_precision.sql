-- 004_precision.sql - the arithmetic precision that computed each vector
-- ('f32', 'bf16', 'int8'; NULL for vectors written before this step,
-- which were float32).  Vectors of one model at any precision are one
-- vector space: switching precision never re-embeds, and this column
-- lets `clipdex status` say how the library's vectors were computed.
ALTER TABLE vectors ADD COLUMN precision TEXT;
