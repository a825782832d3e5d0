"""Fakes of outside services that tests start on loopback and real clients talk to."""
