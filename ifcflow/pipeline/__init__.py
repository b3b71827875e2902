"""Reading, checking and planning a pipeline file. Pure: nothing here touches Redis or RQ."""
