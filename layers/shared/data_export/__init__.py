"""Domain of the organization data-export service (the shared Lambda layer).

Nothing here knows about Lambda events: handlers in ``functions/`` parse events
and call into this package; AWS access goes through the small classes in
``data_export.storage`` built from boto3 clients passed in.
"""
