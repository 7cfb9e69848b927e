"""Query cache: exact and semantic tiers, in process or shared through Redis.

Import from the modules (`config`, `protocol`, `factory`, ...): settings read `config` without
loading the Redis client.
"""
