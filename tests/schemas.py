"""Tool input schemas of many shapes, shared by the schema tests, the model tests and
bench/tools.py: required and optional fields, nested objects, arrays, enums, numbers
with and without bounds, integers, booleans, strings, nullable types and $refs."""

from __future__ import annotations

from typing import Any

SCHEMAS: dict[str, dict[str, Any]] = {
    "get_weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "unit"],
    },
    "create_event": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 40},
            "start": {"type": "string", "format": "date-time"},
            "attendees": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 3,
            },
            "all_day": {"type": "boolean"},
        },
        "required": ["title", "start", "attendees", "all_day"],
    },
    "set_thermostat": {
        "type": "object",
        "properties": {
            "temperature": {"type": "number", "minimum": 5, "maximum": 30},
            "fan_speed": {"type": "integer", "minimum": 0, "maximum": 3},
            "mode": {"enum": ["heat", "cool", "auto"]},
        },
        "required": ["temperature", "fan_speed", "mode"],
    },
    "search_products": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "filters": {
                "type": "object",
                "properties": {
                    "max_price": {"type": "number", "exclusiveMinimum": 0},
                    "in_stock": {"type": "boolean"},
                    "categories": {"type": "array", "items": {"enum": ["books", "toys", "food"]}},
                },
                "required": ["max_price", "in_stock"],
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        },
        "required": ["query", "filters", "limit"],
        "additionalProperties": False,
    },
    "move_robot": {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "direction": {"enum": ["north", "south", "east", "west"]},
                        "distance": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    "required": ["direction", "distance"],
                },
                "minItems": 1,
                "maxItems": 4,
            },
            "speed": {"type": "number", "minimum": -1.5, "maximum": 2.5},
        },
        "required": ["steps", "speed"],
    },
    "send_email": {
        "type": "object",
        "properties": {
            "to": {"type": "string", "description": "Recipient address"},
            "cc": {"type": ["string", "null"]},
            "priority": {"type": "integer", "enum": [1, 2, 3]},
            "body": {"type": "string"},
        },
        "required": ["to", "cc", "priority", "body"],
    },
    "add_contact": {
        "type": "object",
        "$defs": {
            "phone": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["home", "work", "mobile"]},
                    "number": {"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}$"},
                },
                "required": ["kind", "number"],
            }
        },
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 150},
            "phones": {"type": "array", "items": {"$ref": "#/$defs/phone"}, "maxItems": 2},
        },
        "required": ["name", "age", "phones"],
    },
    "rate_answer": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "verdict": {"type": "string", "enum": ["good", "bad"]},
            "notes": {"description": "Anything else (any JSON value)"},
        },
        "required": ["score", "verdict", "notes"],
    },
    "ping": {"type": "object", "properties": {}},
    "log_temperature": {
        "type": "object",
        "properties": {
            "celsius": {"type": "number", "minimum": -40, "exclusiveMaximum": -10.5},
            "station": {"type": "integer", "minimum": -20, "maximum": -3},
        },
        "required": ["celsius", "station"],
    },
}

PROMPTS: dict[str, str] = {
    "get_weather": "What's the weather like in Lisbon?",
    "create_event": "Book a team lunch with Ana and Raj tomorrow at noon.",
    "set_thermostat": "Make the living room a bit warmer, please.",
    "search_products": "Find me some cheap board games that are in stock.",
    "move_robot": "Move the robot two steps north and then one step east.",
    "send_email": "Email Sam that the report is ready.",
    "add_contact": "Save Maria, 34, her mobile is 555-0199.",
    "rate_answer": "Rate this answer: 'Paris is the capital of France.'",
    "ping": "Check that the server is up.",
    "log_temperature": "Record the freezer reading from station minus five.",
}
