"""The hosted payment page: the citizen's server-rendered, Arabic-first checkout and, outside
production, the sandbox's 3-D Secure simulator."""
