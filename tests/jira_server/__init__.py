"""A stateful Jira test server (Cloud and Data Center flavours) that checks every request and
response against Atlassian's OpenAPI document; see server.py, and fixtures.py for the fixture."""
