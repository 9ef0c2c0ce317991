package weir.block_dangerous_tools

# Weir fills input.tool_names from request.tools (function and custom) and the deprecated
# request.functions.
test_a_request_offering_delete_everything_is_denied if {
    count(deny) == 1 with input as {"tool_names": ["get_weather", "delete_everything"]}
}

test_other_tools_are_allowed if {
    count(deny) == 0 with input as {"tool_names": ["get_weather"]}
}

test_a_request_without_tools_is_allowed if {
    count(deny) == 0 with input as {"tool_names": []}
}
