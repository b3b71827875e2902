"""How a run is shown: the terminal view, JUnit/Markdown/HTML reports, RQ Dashboard."""
