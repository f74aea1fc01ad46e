"""HTTP routes: one Blueprint per resource. Views parse, call one function, and return."""
