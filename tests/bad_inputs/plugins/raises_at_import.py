"""A plug-in module whose import raises something other than ImportError (imported by module name)."""

raise RuntimeError("the licence server is down")
