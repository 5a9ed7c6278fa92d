-- 003_review_marks.sql - a person's verdict on a moderation result, set
-- from `clipdex serve`'s moderation view.
--
-- A mark belongs to an image content (its vector) and a label, not to a
-- label set: an image judged a false positive for "weapon" stays judged
-- when the label file changes.  `clipdex moderate` leaves marked results
-- out of its report.  mark: 'reviewed' or 'false_positive'.
CREATE TABLE review_marks (
    vector_id INTEGER NOT NULL REFERENCES vectors(id) ON DELETE CASCADE,
    label     TEXT NOT NULL,
    mark      TEXT NOT NULL CHECK (mark IN ('reviewed', 'false_positive')),
    marked_at INTEGER NOT NULL,
    PRIMARY KEY (vector_id, label)
) WITHOUT ROWID;
