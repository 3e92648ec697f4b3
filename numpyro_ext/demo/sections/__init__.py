"""Demo-tour sections, one module per capability; each registers itself with ``@section``."""
