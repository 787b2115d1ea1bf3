# CRIU's RPC schema (rpc.proto), compiled into ha_agent_core when present.
#
# The schema is CRIU's, shipped by Debian's libcriu-dev; deploy/install-criu
# installs sid's copy to /opt/hactl/criu/include/criu/rpc.proto. It is
# never committed here. Without it the build goes on and agent/criu_rpc.c
# answers -ENOTSUP (HAVE_CRIU_RPC undefined).
#
# HA_CRIU_RPC_PROTO may be set to another rpc.proto (cmake -D...); it must
# be CRIU >= 4.2's (the fields criu_rpc_req.c uses are checked below).

set(_ha_criu_prefix /opt/hactl/criu)
if(DEFINED ENV{HACTL_CRIU_PREFIX})
	set(_ha_criu_prefix $ENV{HACTL_CRIU_PREFIX})
endif()
find_file(HA_CRIU_RPC_PROTO rpc.proto
	PATHS ${_ha_criu_prefix}/include/criu /usr/include/criu
	NO_DEFAULT_PATH
	DOC "CRIU's rpc.proto (deploy/install-criu installs it)")

set(_ha_criu_ok FALSE)
if(HA_CRIU_RPC_PROTO)
	# Fields of CRIU >= 4.x that criu_rpc_req.c sets; an older schema (Debian
	# 12's 3.17) lacks some and is not used.
	file(STRINGS ${HA_CRIU_RPC_PROTO} _ha_criu_fields
		REGEX "(network_lock|images_dir|tcp_close|orphan_pts_master|lazy_pages)[ \t]*=")
	list(LENGTH _ha_criu_fields _ha_criu_nfields)
	if(_ha_criu_nfields GREATER_EQUAL 5)
		set(_ha_criu_ok TRUE)
	else()
		message(STATUS "CRIU RPC: ${HA_CRIU_RPC_PROTO} is too old (need CRIU >= 4.2); "
			"container checkpoints disabled (run deploy/install-criu)")
	endif()
else()
	message(STATUS "CRIU RPC: rpc.proto not found in ${_ha_criu_prefix}/include/criu; "
		"container checkpoints disabled (run deploy/install-criu, then re-run cmake)")
endif()

if(HA_WITH_CRIU STREQUAL "ON" AND NOT _ha_criu_ok)
	message(FATAL_ERROR "HA_WITH_CRIU=ON but no usable CRIU >= 4.2 rpc.proto "
		"(run deploy/install-criu or set HA_CRIU_RPC_PROTO)")
endif()
if(_ha_criu_ok)
	get_filename_component(_ha_criu_incdir ${HA_CRIU_RPC_PROTO} DIRECTORY)
	set(_ha_criu_out ${CMAKE_CURRENT_BINARY_DIR}/criu-gen)
	# Generated as criu/rpc.pb-c.{c,h}: included as "criu/rpc.pb-c.h".
	file(MAKE_DIRECTORY ${_ha_criu_out}/criu ${_ha_criu_out}/proto-src/criu)
	add_custom_command(
		OUTPUT ${_ha_criu_out}/criu/rpc.pb-c.c ${_ha_criu_out}/criu/rpc.pb-c.h
		COMMAND ${CMAKE_COMMAND} -E copy ${HA_CRIU_RPC_PROTO}
			${_ha_criu_out}/proto-src/criu/rpc.proto
		COMMAND ${PROTOC_C} --proto_path=${_ha_criu_out}/proto-src
			--c_out=${_ha_criu_out} ${_ha_criu_out}/proto-src/criu/rpc.proto
		DEPENDS ${HA_CRIU_RPC_PROTO}
		COMMENT "protoc-c CRIU rpc.proto (${HA_CRIU_RPC_PROTO})")
	target_sources(ha_agent_core PRIVATE ${_ha_criu_out}/criu/rpc.pb-c.c)
	# generated code is not ours to lint
	set_source_files_properties(${_ha_criu_out}/criu/rpc.pb-c.c PROPERTIES
		COMPILE_OPTIONS "-Wno-missing-prototypes;-Wno-error")
	target_include_directories(ha_agent_core PRIVATE ${_ha_criu_out})
	target_compile_definitions(ha_agent_core PUBLIC HAVE_CRIU_RPC)
	target_link_libraries(ha_agent_core PUBLIC PkgConfig::PROTOBUFC)
	message(STATUS "CRIU RPC: using ${HA_CRIU_RPC_PROTO}")
endif()
