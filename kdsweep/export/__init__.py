"""Students out of a finished study: loaded, retrained, exported to deployable files."""
