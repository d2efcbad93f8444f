"""The programs people run: dtcore, dtstat and logviewer, and the demo."""
