"""Test support: real peers (Orthanc, PostgreSQL) started from the project's own code."""
