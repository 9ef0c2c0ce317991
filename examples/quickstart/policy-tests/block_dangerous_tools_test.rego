package weir.block_dangerous_tools

function_tool(name) := {"type": "function", "function": {"name": name, "parameters": {}}}

test_a_request_offering_delete_everything_is_denied if {
    count(deny) == 1 with input as {"request": {"tools": [function_tool("get_weather"), function_tool("delete_everything")]}}
}

test_other_tools_are_allowed if {
    count(deny) == 0 with input as {"request": {"tools": [function_tool("get_weather")]}}
}

test_a_request_without_tools_is_allowed if {
    count(deny) == 0 with input as {"request": {"messages": [{"role": "user", "content": "hi"}]}}
}
