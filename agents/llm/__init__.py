"""agents/llm package."""
