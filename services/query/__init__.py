"""Query service: summary, details, review, users, timelines, export and the ignore list."""
