"""The API's shapes (request bodies and answers) and the run event vocabulary."""
