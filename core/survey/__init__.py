"""The survey: photos, classification, buildings, priority, route, reports."""
